# headmri: headache classification from brain MRI, and the regions behind each decision.
# Entry point: validate the configuration, plan the subjects, include one rule file per stage.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/inputs.smk"
include: "workflow/rules/fmri.smk"
include: "workflow/rules/convert.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/parcellate.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/slices.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/rank.smk"
include: "workflow/rules/provenance.smk"


rule all:
    default_target: True
    input:
        all_preprocessing_outputs(),
        all_training_outputs(),
        all_evaluation_outputs(),
        all_explain_outputs(),
        provenance_outputs(),
        demo_outputs(),
        fmri_outputs(),
        P["demographics"],


rule preprocess_all:
    """Preprocessing, parcellation, QC and slices only (no training)."""
    input:
        all_preprocessing_outputs(),
        all_slice_outputs(),
        demo_outputs(),
        fmri_preprocessing_outputs(),
