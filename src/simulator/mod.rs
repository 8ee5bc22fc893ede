//! A fake reasoning model that speaks five apis, streamed and not, at a realistic pace.
