"""Dataset readers: each turns a dataset on disk into validated ``CategoryData`` records."""

from foads.data.aitex import AITEX, AITEX_FABRICS
from foads.data.base import ALL, DatasetReader, validate_category
from foads.data.btad import BTAD, BTAD_CATEGORIES
from foads.data.errors import DatasetError, ImageReadError
from foads.data.folder import ImageFolder
from foads.data.images import (
    IMAGE_EXTENSIONS,
    image_size,
    list_images,
    load_image,
    load_mask,
    load_sample_image,
    load_sample_mask,
)
from foads.data.kolektor import (
    KOLEKTORSDD2_CATEGORY,
    KOLEKTORSDD_CATEGORY,
    KolektorSDD,
    KolektorSDD2,
)
from foads.data.masked_folder import MaskedFolder
from foads.data.mtd import MTD_CATEGORY, MagneticTile
from foads.data.mvtec import DISCOVER, MVTEC_CATEGORIES, MVTecAD
from foads.data.mvtec3d import MVTEC3D_CATEGORIES, MVTec3DAD
from foads.data.sample import CategoryData, Sample
from foads.data.synthetic import (
    DEFECT_TYPES,
    SYNTHETIC_CATEGORIES,
    Synthetic,
    draw_defect,
    generate_synthetic,
)
from foads.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, denormalise
from foads.data.visa import VISA_CATEGORIES, VisA

__all__ = [
    "AITEX",
    "AITEX_FABRICS",
    "ALL",
    "BTAD",
    "BTAD_CATEGORIES",
    "DEFECT_TYPES",
    "DISCOVER",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "KOLEKTORSDD2_CATEGORY",
    "KOLEKTORSDD_CATEGORY",
    "MTD_CATEGORY",
    "MVTEC3D_CATEGORIES",
    "MVTEC_CATEGORIES",
    "SYNTHETIC_CATEGORIES",
    "VISA_CATEGORIES",
    "CategoryData",
    "DatasetError",
    "DatasetReader",
    "ImageFolder",
    "ImageReadError",
    "ImageTransform",
    "KolektorSDD",
    "KolektorSDD2",
    "MVTec3DAD",
    "MVTecAD",
    "MagneticTile",
    "MaskedFolder",
    "Sample",
    "Synthetic",
    "VisA",
    "denormalise",
    "draw_defect",
    "generate_synthetic",
    "image_size",
    "list_images",
    "load_image",
    "load_mask",
    "load_sample_image",
    "load_sample_mask",
    "validate_category",
]
