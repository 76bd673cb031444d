# Convert stage: subjects that come as a DICOM folder (<dicom_dir>/sub-<label>/) and have no NIfTI are
# converted with dcm2niix, anonymised, into results/bids/ (docs/preprocessing.md).


rule dicom_to_nifti:
    input:
        dicom=lambda wildcards: DICOM_INPUT[wildcards.subject],
    output:
        t1w=CONVERTED_T1W + ".nii.gz",
        sidecar=CONVERTED_T1W + ".json",
    log:
        subject_log("dicom_to_nifti"),
    benchmark:
        subject_benchmark("dicom_to_nifti")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_MAIN
    script:
        "../../scripts/dicom_to_nifti.py"
