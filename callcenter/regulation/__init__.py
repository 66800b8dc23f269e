"""The regulation: the business calendar, topics and deadlines, and how dates and numbers
are said."""
