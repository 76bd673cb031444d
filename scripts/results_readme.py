"""Snakemake adapter: write results/README.md, what every file under results/ is (headmri.results_readme)."""


from headmri.joblog import job_log
from headmri.results_readme import write_results_readme

with job_log(snakemake.log[0], "results_readme"):
    p = snakemake.params
    write_results_readme(snakemake.output.readme, sources=p.sources, tasks=p.tasks, models=p.models, folds=p.folds, method=p.method,
                         top_k=p.top_k, patients=p.patients, statistic=p.statistic, save_nifti=p.save_nifti,
                         normalisation=p.normalisation, ranking=p.ranking, controls=p.controls, bootstrap=p.bootstrap,
                         sanity_check=p.sanity_check, sanity_threshold=p.sanity_threshold,
                         fmri=p.get("fmri", False))
