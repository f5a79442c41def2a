// Lint: strict TypeScript everywhere, plus the two architectural rules that keep replay safe:
//  - src/workflows/ is deterministic workflow code: no Node built-ins, no clocks, timers or
//    randomness outside Temporal's APIs, and activities imported as types only;
//  - src/gpu/ (the pure core) and src/iteration/ (the iteration program) import nothing from Temporal or Node.
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', '.timeshare/**', 'reference-engine/**'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({ name, message: 'Workflow code must be deterministic: no Node built-ins.' })),
          patterns: [
            {
              group: ['../activities', '../activities/*', '**/activities/**'],
              allowTypeImports: true,
              message: 'Workflows import activities as types only (proxyActivities).',
            },
            { group: ['@temporalio/client', '@temporalio/worker', '@temporalio/activity'], message: 'Not usable inside workflows.' },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'setInterval', message: 'Use sleep() from @temporalio/workflow in a loop.' },
        { name: 'process', message: 'No process access in workflows.' },
        { name: 'require', message: 'No dynamic require in workflows.' },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: "MemberExpression[object.name='Math'][property.name='random']", message: 'Non-deterministic: use uuid4() or seeded draws.' },
      ],
    },
  },
  {
    files: ['src/gpu/**/*.ts', 'src/validation/**/*.ts', 'src/iteration/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({ name, message: 'The pure core imports no Node built-ins.' })),
          patterns: [
            { group: ['@temporalio/*'], message: 'The pure core imports nothing from Temporal.' },
            { group: ['**/workflows/**', '**/activities/**', '**/simulator/**', '**/store/**', '**/engines/simulated/**'], message: 'The iteration program runs on the pure core and the contract types only.' },
          ],
        },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: "MemberExpression[object.name='Math'][property.name='random']", message: 'The pure core is deterministic.' },
        { selector: "MemberExpression[object.name='Date'][property.name='now']", message: 'The pure core is deterministic.' },
      ],
    },
  },
);
