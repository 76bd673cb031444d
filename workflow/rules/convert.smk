# Convert stage: subjects that come as a DICOM folder (<dicom_dir>/sub-<label>/) and have no NIfTI are
# converted with dcm2niix, anonymised, into results/bids/ (docs/preprocessing.md).


rule dicom_to_nifti:
    input:
        dicom=lambda wildcards: DICOM_INPUT[wildcards.subject],
    output:
        t1w=f"{RESULTS}/bids/sub-{{subject}}/anat/sub-{{subject}}_T1w.nii.gz",
        sidecar=f"{RESULTS}/bids/sub-{{subject}}/anat/sub-{{subject}}_T1w.json",
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
