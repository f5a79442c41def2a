/**
 * Typed search attributes, so runs and iterations can be filtered in the Temporal UI
 * (e.g. `TimeshareRunId = "demo" AND TimesharePhase = "train"`). They must be registered on
 * the server: the dev server gets them as --search-attribute flags (devServer.ts); a cluster
 * needs `temporal operator search-attribute create` once (README).
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const RUN_ID_KEY = defineSearchAttributeKey('TimeshareRunId', SearchAttributeType.KEYWORD);
export const STRATEGY_KEY = defineSearchAttributeKey('TimeshareStrategy', SearchAttributeType.KEYWORD);
export const ITERATION_KEY = defineSearchAttributeKey('TimeshareIteration', SearchAttributeType.INT);
export const PHASE_KEY = defineSearchAttributeKey('TimesharePhase', SearchAttributeType.KEYWORD);

/** name → server type name, as `temporal ... --search-attribute NAME=TYPE` expects. */
export const SEARCH_ATTRIBUTE_REGISTRATIONS: ReadonlyArray<readonly [string, string]> = [
  [RUN_ID_KEY.name, 'Keyword'],
  [STRATEGY_KEY.name, 'Keyword'],
  [ITERATION_KEY.name, 'Int'],
  [PHASE_KEY.name, 'Keyword'],
];
