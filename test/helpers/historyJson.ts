/** History ⇄ JSON lives in src/temporal/historyJson.ts (scripts use it too). */
export * from '../../src/temporal/historyJson';
