"""The call: its row and events, recordings, retention."""
