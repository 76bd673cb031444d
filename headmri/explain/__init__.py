"""Explanations: raw Grad-CAM / attention rollout maps on the MNI grid, regional scores, rankings, figures.

Modules: ``gradcam`` (raw Grad-CAM through pytorch-grad-cam), ``rollout`` (attention rollout),
``maps`` (one subject's 3D map), ``regions`` (max/mean per parcellation region and its checks), ``job``
(the explain_fold job), ``merge`` (patients -> folds -> ranking; planted-region recall), ``figures`` and
``task_figures`` (per-task figures). Method and choices: docs/explanations.md.
"""
