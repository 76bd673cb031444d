# Provenance stage: what made these results. The resolved config, the git state of the code and the
# package versions (main environment), the FSL tools' versions (FSL environment, when an FSL backend is
# chosen) and recon-all's (FreeSurfer container, when that backend is chosen), under results/provenance/.
# No rule reads these files, so they never cause another job to rerun; they are rewritten when the
# config changes (params) or the scripts change.

PROVENANCE_CONFIG = f"{P['provenance']}/config.yaml"
PROVENANCE_ENVIRONMENT = f"{P['provenance']}/environment.json"
PROVENANCE_FSL = f"{P['provenance']}/tools-fsl.json"
PROVENANCE_FREESURFER = f"{P['provenance']}/tools-freesurfer.txt"
USES_FSL = any(b.env == _backends.FSL_ENV for b in BACKEND.values())
USES_FREESURFER = CFG.preprocessing.parcellation == "freesurfer"


rule provenance:
    output:
        config=PROVENANCE_CONFIG,
        environment=PROVENANCE_ENVIRONMENT,
    params:
        config=config,
        repo_dir=workflow.basedir,
        tools=["dcm2niix"],
    log:
        f"{LOGS}/provenance/provenance.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/provenance.py"


rule provenance_tools_fsl:
    output:
        PROVENANCE_FSL,
    params:
        tools=["flirt", "bet"],
    log:
        f"{LOGS}/provenance/tools-fsl.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_FSL
    script:
        "../../scripts/provenance_tools.py"


rule provenance_tools_freesurfer:
    """recon-all's build stamp from inside the FreeSurfer container (which has no Python)."""
    output:
        PROVENANCE_FREESURFER,
    params:
        container=CFG.preprocessing.freesurfer.container,
    log:
        f"{LOGS}/provenance/tools-freesurfer.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    container:
        CFG.preprocessing.freesurfer.container
    shell:
        "( echo 'container: {params.container}'; "
        "  echo -n 'recon-all --version: '; recon-all --version 2>&1 || echo 'recon-all not found' "
        ") > {output:q}.tmp 2> {log:q} && mv {output:q}.tmp {output:q}"


def provenance_outputs():
    return (
        [PROVENANCE_CONFIG, PROVENANCE_ENVIRONMENT]
        + ([PROVENANCE_FSL] if USES_FSL else [])
        + ([PROVENANCE_FREESURFER] if USES_FREESURFER else [])
    )
