# Preprocessing stage, per subject: brain extraction in native space, then affine registration to
# MNI152NLin6Asym 1 mm. Two backends with the same outputs (docs/preprocessing.md); each backend has its
# own adapter script so that FSL-backend jobs (conda: ENV_FSL) never import torch or ANTs.


def preprocess_env(backend):
    return ENV_FSL if backend == "fsl" else ENV_MAIN


def preprocess_script(step, backend):
    return f"../../scripts/{step}{'_fsl' if backend == 'fsl' else ''}.py"


rule brain_extraction:
    input:
        t1w=t1w_input,
        accepted=P["input_ok"],
    output:
        brain=P["brain_native"],
        mask=P["mask_native"],
    params:
        backend=CFG.preprocessing.brain_extraction,
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
        preprocess_env(CFG.preprocessing.brain_extraction)
    script:
        preprocess_script("brain_extraction", CFG.preprocessing.brain_extraction)


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
        preprocess_env(CFG.preprocessing.registration)
    script:
        preprocess_script("register_to_mni", CFG.preprocessing.registration)
