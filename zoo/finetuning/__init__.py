"""Fine-tuning: the hyper-parameter schema, the shared trainer, and an image and a text front.

    hyperparameters  the one schema of hyper-parameters (CLI, library, server, proto)
    trainer          the core both fronts share: state, checkpoints, callbacks, the result
    head             a head trained on cached features, one compiled loop an epoch
    image, text      the two fronts; image_data and splits feed them
    events           the wording of a run's events, for the CLI and the server
    report           metrics, plots and the model card
    api              `finetune()`, which `zoo.finetune` is
"""
