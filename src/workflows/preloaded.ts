/**
 * Evaluated once per worker thread and shared by every workflow it runs
 * (`WORKFLOW_BUNDLE_INPUTS.preloadModules`, src/workers/bundle.ts): zod, which holds no
 * per-workflow state and was most of a workflow's creation (docs/benchmarks.md, "zod evaluated
 * once per worker"). zod declares itself free of side effects, so the bundler drops a bare preload
 * of it; this module uses it, which keeps it.
 *
 * The SDK deep-freezes shared modules once they are loaded, and zod sets parts of its global state
 * at its first schema and first failed parse (the default locale, its memoizer, whether it may
 * compile parsers): both happen here, before the freeze, or an update validator's first rejection
 * would fail on a frozen object instead of naming the rule.
 */
import { z } from 'zod';

const warmUp = z.object({ ranks: z.array(z.number().int().nonnegative()).min(1).nullable() }).strict();
warmUp.safeParse({ ranks: [0] });
warmUp.safeParse({ ranks: [-1], extra: true });

export const preloadedZod = z;
