"""Who calls: organisations, contacts and their phone numbers."""
