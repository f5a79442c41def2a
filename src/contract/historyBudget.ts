/**
 * History budgets. Temporal suggests continue-as-new at 4 MiB or 4,096 events per workflow
 * history (server defaults limit.historySize/historyCount.suggestContinueAsNew) and fails a
 * workflow at 50 MiB / 51,200 events. The run workflow carries each iteration's input and result
 * (the sample ledger: about 50 bytes per live sample), so at large batch sizes its history grows by
 * hundreds of KiB per iteration: it continues-as-new once its history passes this budget, which
 * leaves room for one more iteration below the suggestion.
 */
export const RUN_HISTORY_BYTES_BUDGET = 2 * 1024 * 1024;
