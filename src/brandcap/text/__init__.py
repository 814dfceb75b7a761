"""Brand names in free text: the one matcher (brands) and the clean stage's rules built on it (clean_rules)."""
