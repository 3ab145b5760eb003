"""Every model in `keras.applications`, with the metadata Keras publishes for it.

Top-1/top-5 are the ImageNet validation accuracies from the Keras Applications table
(and the MobileNetV3 docstring, which gives top-1 only). Parameter counts are those of
the with-top model, counted by building each architecture (`tools/count_params.py`).
MobileNet v1/v2/v3 also ship smaller official variants (width multiplier `alpha`,
input resolution, "minimalistic"); those are registered too, because a 0.35-wide
MobileNetV2 at 96 px is what you want on a CPU, in a test, or on a phone.
"""

from __future__ import annotations

from typing import Any

from zoo.hub.registry.table import register
from zoo.hub.spec import IMAGE_CLASSIFICATION, HeadSpec, InputSpec, ModelSpec, Provenance

LICENSE = "Apache-2.0"  # keras-team/keras-applications weights release


def _image(
    name: str,
    architecture: str,
    family: str,
    size: int,
    preprocessing: str,
    params: int,
    paper: str,
    top1: float | None = None,
    top5: float | None = None,
    description: str = "",
    **builder_kwargs: Any,
) -> ModelSpec:
    return register(
        ModelSpec(
            name=name,
            task=IMAGE_CLASSIFICATION,
            family=family,
            builder="keras.applications",
            architecture=architecture,
            params=params,
            input=InputSpec(size=(size, size), preprocessing=preprocessing),
            head=HeadSpec(num_classes=1000, labels="imagenet"),
            provenance=Provenance(license=LICENSE, paper=paper, top1=top1, top5=top5),
            builder_kwargs=tuple(sorted(builder_kwargs.items())),
            description=description,
        )
    )


_ARXIV = "https://arxiv.org/abs/"

# name, Keras class, family, input size, preprocessing, params, paper, top-1, top-5
_image("vgg16", "VGG16", "vgg", 224, "caffe", 138357544, _ARXIV + "1409.1556", 71.3, 90.1)
_image("vgg19", "VGG19", "vgg", 224, "caffe", 143667240, _ARXIV + "1409.1556", 71.3, 90.0)
_image("resnet50", "ResNet50", "resnet", 224, "caffe", 25636712, _ARXIV + "1512.03385", 74.9, 92.1)
_image("resnet101", "ResNet101", "resnet", 224, "caffe", 44707176, _ARXIV + "1512.03385", 76.4, 92.8)
_image("resnet152", "ResNet152", "resnet", 224, "caffe", 60419944, _ARXIV + "1512.03385", 76.6, 93.1)
_image("resnet50_v2", "ResNet50V2", "resnet_v2", 224, "tf", 25613800, _ARXIV + "1603.05027", 76.0, 93.0)
_image("resnet101_v2", "ResNet101V2", "resnet_v2", 224, "tf", 44675560, _ARXIV + "1603.05027", 77.2, 93.8)
_image("resnet152_v2", "ResNet152V2", "resnet_v2", 224, "tf", 60380648, _ARXIV + "1603.05027", 78.0, 94.2)
_image("inception_v3", "InceptionV3", "inception", 299, "tf", 23851784, _ARXIV + "1512.00567", 77.9, 93.7)
_image("inception_resnet_v2", "InceptionResNetV2", "inception", 299, "tf", 55873736, _ARXIV + "1602.07261", 80.3, 95.3)
_image("xception", "Xception", "xception", 299, "tf", 22910480, _ARXIV + "1610.02357", 79.0, 94.5)
_image("densenet121", "DenseNet121", "densenet", 224, "torch", 8062504, _ARXIV + "1608.06993", 75.0, 92.3)
_image("densenet169", "DenseNet169", "densenet", 224, "torch", 14307880, _ARXIV + "1608.06993", 76.2, 93.2)
_image("densenet201", "DenseNet201", "densenet", 224, "torch", 20242984, _ARXIV + "1608.06993", 77.3, 93.6)
_image("nasnet_mobile", "NASNetMobile", "nasnet", 224, "tf", 5326716, _ARXIV + "1707.07012", 74.4, 91.9)
_image("nasnet_large", "NASNetLarge", "nasnet", 331, "tf", 88949818, _ARXIV + "1707.07012", 82.5, 96.0)

_EFFICIENTNET = _ARXIV + "1905.11946"
_image("efficientnet_b0", "EfficientNetB0", "efficientnet", 224, "none", 5330571, _EFFICIENTNET, 77.1, 93.3)
_image("efficientnet_b1", "EfficientNetB1", "efficientnet", 240, "none", 7856239, _EFFICIENTNET, 79.1, 94.4)
_image("efficientnet_b2", "EfficientNetB2", "efficientnet", 260, "none", 9177569, _EFFICIENTNET, 80.1, 94.9)
_image("efficientnet_b3", "EfficientNetB3", "efficientnet", 300, "none", 12320535, _EFFICIENTNET, 81.6, 95.7)
_image("efficientnet_b4", "EfficientNetB4", "efficientnet", 380, "none", 19466823, _EFFICIENTNET, 82.9, 96.4)
_image("efficientnet_b5", "EfficientNetB5", "efficientnet", 456, "none", 30562527, _EFFICIENTNET, 83.6, 96.7)
_image("efficientnet_b6", "EfficientNetB6", "efficientnet", 528, "none", 43265143, _EFFICIENTNET, 84.0, 96.8)
_image("efficientnet_b7", "EfficientNetB7", "efficientnet", 600, "none", 66658687, _EFFICIENTNET, 84.3, 97.0)

_EFFICIENTNET_V2 = _ARXIV + "2104.00298"
_image("efficientnet_v2_b0", "EfficientNetV2B0", "efficientnet_v2", 224, "none", 7200312, _EFFICIENTNET_V2, 78.7, 94.3)
_image("efficientnet_v2_b1", "EfficientNetV2B1", "efficientnet_v2", 240, "none", 8212124, _EFFICIENTNET_V2, 79.8, 95.0)
_image("efficientnet_v2_b2", "EfficientNetV2B2", "efficientnet_v2", 260, "none", 10178374, _EFFICIENTNET_V2, 80.5, 95.1)
_image("efficientnet_v2_b3", "EfficientNetV2B3", "efficientnet_v2", 300, "none", 14467622, _EFFICIENTNET_V2, 82.0, 95.8)
_image("efficientnet_v2_s", "EfficientNetV2S", "efficientnet_v2", 384, "none", 21612360, _EFFICIENTNET_V2, 83.9, 96.7)
_image("efficientnet_v2_m", "EfficientNetV2M", "efficientnet_v2", 480, "none", 54431388, _EFFICIENTNET_V2, 85.3, 97.4)
_image("efficientnet_v2_l", "EfficientNetV2L", "efficientnet_v2", 480, "none", 119027848, _EFFICIENTNET_V2, 85.7, 97.5)

_CONVNEXT = _ARXIV + "2201.03545"
_image("convnext_tiny", "ConvNeXtTiny", "convnext", 224, "none", 28589128, _CONVNEXT, 81.3)
_image("convnext_small", "ConvNeXtSmall", "convnext", 224, "none", 50223688, _CONVNEXT, 82.3)
_image("convnext_base", "ConvNeXtBase", "convnext", 224, "none", 88591464, _CONVNEXT, 85.3)
_image("convnext_large", "ConvNeXtLarge", "convnext", 224, "none", 197767336, _CONVNEXT, 86.3)
_image("convnext_xlarge", "ConvNeXtXLarge", "convnext", 224, "none", 350196968, _CONVNEXT, 86.7)

# MobileNet v1: alpha in {0.25, 0.5, 0.75, 1.0} x resolution in {128, 160, 192, 224}.
_MOBILENET = _ARXIV + "1704.04861"
_image("mobilenet", "MobileNet", "mobilenet", 224, "tf", 4253864, _MOBILENET, 70.4, 89.5)
for _alpha, _params in ((0.25, 475544), (0.5, 1342536), (0.75, 2601976), (1.0, 4253864)):
    for _rows in (128, 160, 192, 224):
        if (_alpha, _rows) == (1.0, 224):
            continue  # that is `mobilenet` itself
        _image(
            f"mobilenet_{int(_alpha * 100):03d}_{_rows}", "MobileNet", "mobilenet", _rows, "tf",
            _params, _MOBILENET,
            description=f"MobileNet, width {_alpha}, {_rows} px", alpha=_alpha,
        )

# MobileNetV2: alpha in {0.35, 0.5, 0.75, 1.0, 1.3, 1.4} x resolution in {96, ..., 224}.
_MOBILENET_V2 = _ARXIV + "1801.04381"
_image("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, "tf", 3538984, _MOBILENET_V2, 71.3, 90.1)
for _alpha, _params in ((0.35, 1691208), (0.5, 1987224), (0.75, 2663064), (1.0, 3538984), (1.3, 5431048), (1.4, 6156712)):
    for _rows in (96, 128, 160, 192, 224):
        if (_alpha, _rows) == (1.0, 224):
            continue  # that is `mobilenet_v2` itself
        if _alpha in (1.3, 1.4) and _rows != 224:
            continue  # Keras publishes the wide variants at 224 px only
        _image(
            f"mobilenet_v2_{int(round(_alpha * 100)):03d}_{_rows}", "MobileNetV2", "mobilenet_v2",
            _rows, "tf", _params, _MOBILENET_V2,
            description=f"MobileNetV2, width {_alpha}, {_rows} px", alpha=_alpha,
        )

# MobileNetV3: include their own rescaling layer, so they take raw pixels.
_MOBILENET_V3 = _ARXIV + "1905.02244"
_image("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3", 224, "none", 5507432, _MOBILENET_V3, 75.6)
_image("mobilenet_v3_large_075", "MobileNetV3Large", "mobilenet_v3", 224, "none", 4012616, _MOBILENET_V3, 73.3, alpha=0.75)
_image("mobilenet_v3_large_minimalistic", "MobileNetV3Large", "mobilenet_v3", 224, "none", 3948688, _MOBILENET_V3, 72.3, minimalistic=True)
_image("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", 224, "none", 2554968, _MOBILENET_V3, 68.1)
_image("mobilenet_v3_small_075", "MobileNetV3Small", "mobilenet_v3", 224, "none", 2051552, _MOBILENET_V3, 65.4, alpha=0.75)
_image("mobilenet_v3_small_minimalistic", "MobileNetV3Small", "mobilenet_v3", 224, "none", 2056848, _MOBILENET_V3, 61.9, minimalistic=True)
