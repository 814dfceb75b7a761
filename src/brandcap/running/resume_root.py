"""The project's resume folder: the one place outside the declared outputs where stages keep state between runs
(each long stage's partial work under `.resume/<stage>/...`, the GPU claims, the project lock, torch's compile cache).
Orchestrators delete a stage's outputs before rerunning it; what is kept here survives that. dvc.yaml's `paths.resume`
names the same folder for the commands (tests/test_paths.py keeps the two equal)."""

from pathlib import Path

RESUME_ROOT = Path(".resume")
