"""Text backbones from Hugging Face snapshots, built with keras-hub's converters.

Each spec names the keras-hub backbone class that reads the snapshot's
`config.json` and `model.safetensors`; the manifest pins the Hub repo, revision and
files (and the installed package that carries MiniLM for offline use).
"""

from __future__ import annotations

from zoo.hub.registry.table import register
from zoo.hub.spec import (
    TEXT_CLASSIFICATION,
    TEXT_EMBEDDING,
    HeadSpec,
    InputSpec,
    ModelSpec,
    Provenance,
)

register(
    ModelSpec(
        name="minilm_l6_v2",
        task=TEXT_EMBEDDING,
        family="bert",
        builder="keras_hub",
        architecture="BertBackbone",
        params=22713216,
        input=InputSpec(preprocessing="bert-wordpiece", max_length=256),
        head=HeadSpec(pooling="mean"),
        provenance=Provenance(license="Apache-2.0", paper="https://arxiv.org/abs/1908.10084"),
        weights_tag="sentence-transformers",
        description="all-MiniLM-L6-v2: 384-d sentence embeddings, 6 layers",
    )
)
register(
    ModelSpec(
        name="bert_base_uncased",
        task=TEXT_CLASSIFICATION,
        family="bert",
        builder="keras_hub",
        architecture="BertBackbone",
        params=109482240,
        input=InputSpec(preprocessing="bert-wordpiece", max_length=512),
        head=HeadSpec(pooling="cls"),
        provenance=Provenance(license="Apache-2.0", paper="https://arxiv.org/abs/1810.04805"),
        weights_tag="google-bert",
        description="BERT base, uncased English: a backbone to fine-tune classifiers on",
    )
)
register(
    ModelSpec(
        name="distilbert_base_uncased",
        task=TEXT_CLASSIFICATION,
        family="distilbert",
        builder="keras_hub",
        architecture="DistilBertBackbone",
        params=66362880,
        input=InputSpec(preprocessing="bert-wordpiece", max_length=512),
        head=HeadSpec(pooling="cls"),
        provenance=Provenance(license="Apache-2.0", paper="https://arxiv.org/abs/1910.01108"),
        weights_tag="distilbert",
        description="DistilBERT base, uncased: 40% smaller, 60% faster than BERT base",
    )
)
