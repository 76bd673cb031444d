# QC stage: per subject a picture (registered brain with the template's brain outline) and a row of
# numbers; for the cohort one table with robust-z outliers flagged, and a figure (docs/preprocessing.md).


rule qc_subject:
    input:
        brain=P["brain_mni"],
        mask=P["mask_mni"],
        mask_native=P["mask_native"],
        t1w=t1w_input,
    output:
        png=P["qc_png"],
        row=P["qc_row"],
    log:
        subject_log("qc_subject"),
    benchmark:
        subject_benchmark("qc_subject")
    group:
        "preprocess"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_MAIN
    script:
        "../../scripts/qc_subject.py"


rule qc_table:
    input:
        rows=expand_subjects(P["qc_row"]),
    output:
        tsv=P["qc_table"],
        png=f"{RESULTS}/qc/preprocessing.png",
    params:
        outlier_z=CFG.preprocessing.qc_outlier_z,
        min_spread=CFG.preprocessing.qc_min_spread,
    log:
        f"{LOGS}/qc/qc_table.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/qc_table.py"


def all_preprocessing_outputs():
    """Every image's native brain and mask, transform and affine, MNI brain, mask and parcellation, QC
    picture; and the cohort's input-check table, QC table and figure."""
    if not CFG.structural:  # an fMRI-only run: its input checks only (fmri.smk has the rest)
        return [P["inputs"]]
    per_subject = ["brain_native", "mask_native", "xfm", "affine", "brain_mni", "mask_mni", "dseg_mni", "qc_png"]
    return [path for key in per_subject for path in expand_subjects(P[key])] + [
        P["inputs"],
        P["qc_table"],
        f"{RESULTS}/qc/preprocessing.png",
    ]
