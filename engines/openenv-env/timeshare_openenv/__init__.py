"""A multi-turn, tool-using OpenEnv environment for timeshare's tests and examples."""
