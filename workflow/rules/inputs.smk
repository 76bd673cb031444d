# Input checks, before any heavy work: each image's header and voxels are read once (check_input, which
# always succeeds and records ok or the problem), the cohort's rows are gathered in results/qc/inputs.tsv
# (with the files that config `runs` left out), and each image is then accepted or refused (accept_input:
# it fails with the problem, naming subject and file, in its log). Every heavy job of an image needs its
# acceptance. The three rules run first (priority), so without --keep-going the run stops after the
# checks and before any brain extraction, with inputs.tsv listing every problem; with --keep-going the
# accepted images go on. (docs/preprocessing.md, "Input checks")

INPUT_PRIORITY = 100


rule check_input:
    input:
        t1w=t1w_input,
    output:
        row=P["input_row"],
    params:
        label=lambda wildcards: PARTICIPANT_OF[wildcards.subject],
        choice=lambda wildcards: IMAGES[wildcards.subject].choice,
    log:
        subject_log("check_input"),
    benchmark:
        subject_benchmark("check_input")
    group:
        "inputs"
    priority: INPUT_PRIORITY
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/check_input.py"


rule input_table:
    input:
        rows=(expand_subjects(P["input_row"]) if CFG.structural else [])
        + (expand(P["bold_input_row"], subject=sorted(BOLD_RUNS)) if FMRI.enabled else []),
    output:
        # update: the previous table stays in place while this job runs (written anew atomically at its end),
        # so a crash while it runs leaves the old table, and every subject's acceptance (ancient) stays done
        # instead of being redone with all of its preprocessing (docs/cluster.md)
        tsv=update(P["inputs"]),
    params:
        unused=_inputs.unused_rows(IMAGES.values()) + (_inputs.unused_rows(BOLD_RUNS.values(), "bold") if FMRI.enabled else []),
    log:
        f"{LOGS}/qc/input_table.log",
    priority: INPUT_PRIORITY
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/input_table.py"


rule accept_input:
    input:
        row=P["input_row"],
        # ancient: only the order matters (the cohort table first), so adding a subject re-accepts no other
        table=ancient(P["inputs"]),
    output:
        accepted=P["input_ok"],
    log:
        subject_log("accept_input"),
    benchmark:
        subject_benchmark("accept_input")
    group:
        "preprocess"
    priority: INPUT_PRIORITY
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/accept_input.py"
