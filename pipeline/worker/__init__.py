"""The stream processors: identity and profile stages, wired into a Faust app."""
