"""The device side of imprinting: numpy plus one inference runtime, never torch or tensorflow.

    from imprinting.runtime import Recognizer
    with Recognizer.open("bundle/", store="classes.npz") as r:
        r.learn("mug", ["mug1.jpg"])
        print(r.recognize("photo.jpg").label)
        r.save()
"""

from .bundle import Bundle, ExtractorEntry, Manifest, load_bundle
from .classifier import ImprintedClassifier
from .classset import ClassSet, Learned
from .ranking import UnknownPolicy
from .unit import normalize_embeddings
from .extractor import Extractor, ExtractorOptions, load_extractor
from .images import decode_image, load_image
from .preprocess import PreprocessSpec, preprocess
from .recognizer import Recognizer
from .recognizer_options import RecognizerOptions
from .results import Category, Classification, LearnReport
from .shot_offsets import ShotOffsets
from .store import StoreData, read_store, write_store
from .unknown_check import UnknownCheck, check_unknown

__all__ = [
    "Bundle", "Category", "ClassSet", "Classification", "ExtractorEntry", "Extractor", "ExtractorOptions", "ImprintedClassifier",
    "Learned", "LearnReport", "Manifest", "PreprocessSpec", "Recognizer", "RecognizerOptions", "ShotOffsets", "StoreData", "UnknownCheck",
    "UnknownPolicy", "check_unknown", "decode_image", "load_bundle", "load_extractor", "load_image", "normalize_embeddings", "preprocess",
    "read_store", "write_store",
]
