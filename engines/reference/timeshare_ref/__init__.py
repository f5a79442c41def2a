"""Reference rollout engine and trainer for timeshare: a small causal LM served over HTTP."""
