# Preprocessing stage, per subject: brain extraction in native space, then affine registration to
# MNI152NLin6Asym 1 mm. Two backends with the same outputs (docs/preprocessing.md); each backend has its
# own adapter script so that FSL-backend jobs (envs/fsl.yaml) never import torch or ANTs. Script and env
# come from the backend table (BACKEND in common.smk, headmri.backends).


rule brain_extraction:
    input:
        t1w=t1w_input,
        accepted=P["input_ok"],
    output:
        brain=P["brain_native"],
        mask=P["mask_native"],
    params:
        backend=CFG.preprocessing.brain_extraction,  # not read by the scripts: a backend change reruns the step
        bet_frac=CFG.preprocessing.bet_frac,
    log:
        subject_log("brain_extraction"),
    benchmark:
        subject_benchmark("brain_extraction")
    group:
        "preprocess"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        backend_env("brain_extraction")
    script:
        backend_script("brain_extraction")


rule register_to_mni:
    input:
        brain=P["brain_native"],
        mask=P["mask_native"],
    output:
        brain=P["brain_mni"],
        mask=P["mask_mni"],
        xfm=P["xfm"],
        affine=P["affine"],
    params:
        backend=CFG.preprocessing.registration,
        transform=CFG.preprocessing.ants_transform,
    log:
        subject_log("register_to_mni"),
    benchmark:
        subject_benchmark("register_to_mni")
    group:
        "preprocess"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=30,
    conda:
        backend_env("registration")
    script:
        backend_script("registration")
