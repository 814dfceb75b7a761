"""The study's parameters: the schema every stage validates against (params), the commented parameter file
rendered from it (params_file), and profiles, the overlays of it (profiles)."""
