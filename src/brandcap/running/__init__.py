"""Running a stage: its entry-script frame (stage), its devices and processes (launch, gpus), one
orchestrator at a time (project_lock), the resume folder and its fingerprint (resume_root, resume_state),
progress lines (progress), where a result came from (provenance) and the code each stage runs (stage_code)."""
