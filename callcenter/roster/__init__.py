"""Who is on duty: the roster (staff, shifts, duties) by the production calendar, and its
YAML import."""
