"""Hyperparameter search over the one training engine, on Optuna (`onyx tune image|text`).

    study = run_study(config, default_space(config), StudySettings("pets", Path("runs/tune"),
                                                                   trials=12))
    write_results(study, Path("runs/tune/pets"), "accuracy")

`space` (what is searched), `objective` (one trial = one `fit`), `study` (storage, pruner,
budget, Ctrl-C, checkpoints), `results` (best.toml, best.json, plots, the table).
"""
