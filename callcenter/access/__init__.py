"""Who may use the console and the API: users and API tokens."""
