# Preprocessing stage, per subject: brain extraction in native space, then affine registration to
# MNI152NLin6Asym 1 mm. Two backends with the same outputs (docs/preprocessing.md); each backend has its
# own adapter script so that FSL-backend jobs (envs/fsl.yaml) never import torch or ANTs. Script and env
# come from the backend table (BACKEND in common.smk, headmri.backends).


def preprocess_script(rule_name, backend):
    """The adapter script of the backend table for this rule's step. Snakemake reruns a job whose `script:`
    line changes text, so the rules keep the call they had before the table existed."""
    step = {"brain_extraction": "brain_extraction", "register_to_mni": "registration"}[rule_name]
    return f"../../scripts/{_backends.backend(step, backend).script}"


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
    # One thread: the steps use 1.2 cores with two (deepbet 214 CPU s in 177 s wall, ANTs 275 in 229, 32 demo
    # subjects), and a 2-thread job held both cores of the demo machine while the QC job waited; subjects
    # side by side use every core (docs/benchmarks.md, "The demo workflow").
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        backend_env("brain_extraction")
    script:
        preprocess_script("brain_extraction", CFG.preprocessing.brain_extraction)


rule bias_correction:
    input:
        brain=P["brain_native"],
        mask=P["mask_native"],
    output:
        brain=P["brain_biascorr"],
    log:
        subject_log("bias_correction"),
    benchmark:
        subject_benchmark("bias_correction")
    group:
        "preprocess"
    threads: 1  # as brain_extraction
    resources:
        mem_mb=3000,
        runtime=20,
    conda:
        ENV_MAIN  # antspyx, whichever backend extracted the brain
    script:
        "../../scripts/bias_correction.py"


def registration_input(wildcards):
    """The brain the registration moves: N4-corrected with preprocessing.bias_correction: n4."""
    return P["brain_biascorr" if CFG.preprocessing.bias_correction == "n4" else "brain_native"].format(**wildcards)


rule register_to_mni:
    input:
        brain=registration_input,
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
    threads: 1  # as brain_extraction
    resources:
        mem_mb=3000,
        runtime=30,
    conda:
        backend_env("registration")
    script:
        preprocess_script("register_to_mni", CFG.preprocessing.registration)
