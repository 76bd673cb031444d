# Demo cohort stage: when bids_dir is null, the workflow makes its own BIDS dataset of synthetic heads
# with planted group effects (docs/demo_cohort.md). The whole cohort is one job: if it reruns, every
# subject is made again (identically, from the same seed).

if CFG.is_demo:

    def demo_effects_tsv():
        path = Path(CFG.demo.effects_tsv)
        return str(path if path.is_absolute() or path.exists() else Path(workflow.basedir) / path)

    rule make_demo_cohort:
        input:
            atlas=P["atlas"],
            effects=demo_effects_tsv(),
        output:
            t1w=list(T1W_INPUT.values()),
            participants=PARTICIPANTS_TSV,
            ground_truth=f"{BIDS_DIR}/ground_truth.tsv",
        params:
            seed=CFG.demo.seed,
            group_sizes=dict(CFG.demo.group_sizes),
        log:
            f"{LOGS}/demo/make_demo_cohort.log",
        threads: 2
        resources:
            mem_mb=4000,
            runtime=30,
        conda:
            ENV_MAIN
        script:
            "../../scripts/make_demo_cohort.py"
