# Demo cohort stage: when bids_dir is null, the workflow makes its own BIDS dataset of synthetic heads
# with planted group effects (docs/demo_cohort.md). One job per subject, a function of (seed, label,
# group) and its group's effects only, so a larger group adds jobs and reruns none; one small job writes
# the cohort's tables from the config alone.

if CFG.is_demo and CFG.structural:
    from headmri.demo.effects import read_effects as _read_effects

    def demo_effects_tsv():
        path = Path(CFG.demo.effects_tsv)
        return str(path if path.is_absolute() or path.exists() else Path(workflow.basedir) / path)

    # Read and checked when the workflow is planned: a bad table stops the run before any job. Jobs get
    # their rows as params, so editing one group's effects reruns that group's subjects only.
    DEMO_GROUPS = [group for group, size in CFG.demo.group_sizes.items() if int(size) > 0]
    DEMO_EFFECTS = [e.as_dict() for e in _read_effects(demo_effects_tsv()) if e.group in DEMO_GROUPS]
    DEMO_TRUTH = f"{BIDS_DIR}/derivatives/truth/sub-{{subject}}/anat/sub-{{subject}}"

    rule make_demo_subject:
        input:
            atlas=P["atlas"],
        output:
            t1w=f"{BIDS_DIR}/sub-{{subject}}/anat/sub-{{subject}}_T1w.nii.gz",
            mask=DEMO_TRUTH + "_desc-brain_mask.nii.gz",
            affine=DEMO_TRUTH + f"_from-T1w_to-{SPACE}_affine.txt",
        params:
            bids_dir=BIDS_DIR,
            seed=CFG.demo.seed,
            group=lambda wildcards: SUBJECT_GROUP[wildcards.subject],
            effects=lambda wildcards: [e for e in DEMO_EFFECTS if e["group"] == SUBJECT_GROUP[wildcards.subject]],
            restore_brain_mean=CFG.demo.restore_brain_mean,
        log:
            subject_log("demo"),
        benchmark:
            subject_benchmark("demo")
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            ENV_MAIN
        script:
            "../../scripts/make_demo_subject.py"

    # The tables depend on the seed and the group sizes only, the ground truth on the effects only: a
    # changed effect leaves participants.tsv (which the splits read) untouched.
    rule make_demo_tables:
        output:
            participants=PARTICIPANTS_TSV,
            description=f"{BIDS_DIR}/dataset_description.json",
            parameters=f"{BIDS_DIR}/derivatives/truth/parameters.tsv",
        params:
            part="tables",
            bids_dir=BIDS_DIR,
            seed=CFG.demo.seed,
            group_sizes=dict(CFG.demo.group_sizes),
        log:
            f"{LOGS}/demo/make_demo_tables.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            ENV_MAIN
        script:
            "../../scripts/make_demo_tables.py"

    rule make_demo_ground_truth:
        output:
            ground_truth=f"{BIDS_DIR}/ground_truth.tsv",
        params:
            part="ground_truth",
            bids_dir=BIDS_DIR,
            effects=DEMO_EFFECTS,
        log:
            f"{LOGS}/demo/make_demo_ground_truth.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            ENV_MAIN
        script:
            "../../scripts/make_demo_tables.py"


def demo_outputs():
    """The demo cohort's files that no rule reads (its ground truth), so that the run still writes them."""
    return [f"{BIDS_DIR}/ground_truth.tsv"] if CFG.is_demo and CFG.structural else []
