"""Face datasets with sensitive attributes: CelebA, LFW (with PubFig attributes) and UTKFace.

No package registry ships these; they are read from the local cache in their canonical on-disk format:

- CelebA: ``list_attr_celeba.txt`` (count line, attribute-name line, then ``file v1 ... v40`` with values
  1/-1) and ``img_align_celeba/*.jpg``. Images are centre-cropped to a square and resized to
  ``image_size`` (64 by default): 3x64x64 in [0, 1].
- LFW: ``lfw_attributes.txt`` (the PubFig attribute file, tab-separated, header ``person imagenum Male ...``,
  optionally preceded by comment lines and with a leading ``#`` on the header) plus either
  ``lfw_images.npz`` (``arr_0``: (n, 62, 47, 3) uint8, one image per attribute row, upstream's cache) or
  scikit-learn's ``lfw_home/lfw_funneled/<Name>/<Name>_<num:04d>.jpg`` (cropped to rows 70:195, columns
  78:172 and halved to 62x47, as upstream). Images are flattened (3 * 62 * 47 = 8,742 features) in [0, 1].
- UTKFace: ``UTKFace/<age>_<gender>_<race>_<datetime>.jpg[.chip.jpg]`` (gender 0 = male, 1 = female; race
  0 White, 1 Black, 2 Asian, 3 Indian, 4 Others). Files with malformed names are skipped (and logged).

Sensitive attributes are coded as upstream Amulet codes them, so its scripts (filters such as
``drop_values={"race": [2]}``, ``filter_value``) carry over: LFW race 0 = White, 1 = Black, gender 1 = male,
age the PubFig class 0-4 (Baby, Child, Youth, Middle Aged, Senior); UTKFace the raw codes of its file names
(age in years, gender 0 = male, 1 = female, race 0-4).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from amulet._validation import Interval, Options, check_param
from amulet.datasets._base import AmuletDataset, make_tensor_dataset
from amulet.datasets._sources import DATASET_SOURCES, resolve_source
from amulet.datasets._tabular_prep import check_split_rows, stratified_indices
from amulet.exceptions import InvalidParameterError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["load_celeba", "load_lfw", "load_utkface", "read_celeba_attributes", "read_lfw_attributes"]

logger = logging.getLogger("amulet.datasets")


def _split_key(*columns: np.ndarray) -> np.ndarray:
    """Combined stratification key (``stratified_indices`` falls back to the label when a group is too rare)."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        key = key * (int(column.max()) + 1 if len(column) else 1) + column.astype(np.int64)
    return key


def _face_dataset(
    name: str,
    source: str,
    images: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    sensitive: list[str],
    num_classes: int,
    modality: str,
    num_features: int,
    test_size: float,
    random_seed: int,
    *,
    stratify: bool = True,
) -> AmuletDataset:
    check_split_rows(f"load_{name}", len(y), test_size)
    if stratify:
        train_idx, test_idx = stratified_indices(y, test_size, random_seed, stratify=_split_key(y, *z.T))
    else:
        from sklearn.model_selection import train_test_split

        # Upstream's plain seeded split, in its (shuffled) order: the same rows, row for row, as upstream.
        train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=test_size, random_state=int(random_seed))
    logger.info("%s: %d train / %d test samples, inputs %s", name, len(train_idx), len(test_idx), images.shape[1:])
    x_train, x_test = images[train_idx], images[test_idx]
    return AmuletDataset(
        train_set=make_tensor_dataset(x_train, y[train_idx]),
        test_set=make_tensor_dataset(x_test, y[test_idx]),
        num_features=num_features,
        num_classes=num_classes,
        modality=modality,  # type: ignore[arg-type]
        sensitive_columns=sensitive,
        x_train=x_train,
        x_test=x_test,
        y_train=y[train_idx],
        y_test=y[test_idx],
        z_train=z[train_idx],
        z_test=z[test_idx],
        name=name,
        source=source,
        index_train=train_idx,
        index_test=test_idx,
    )


def _square_resize(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        width, height = rgb.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        rgb = rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


# --------------------------------------------------------------------------------------------------
# CelebA
# --------------------------------------------------------------------------------------------------


def read_celeba_attributes(path: Path | str) -> tuple[list[str], list[str], np.ndarray]:
    """Parse ``list_attr_celeba.txt``.

    Returns:
        ``(file_names, attribute_names, values)`` with ``values`` an int8 (n, 40) array of 0/1
        (the file's -1 becomes 0).
    """
    lines = Path(path).read_text().splitlines()
    count = int(lines[0].strip())
    names = lines[1].split()
    rows = [line.split() for line in lines[2 : 2 + count] if line.strip()]
    if len(rows) != count or any(len(r) != len(names) + 1 for r in rows):
        raise InvalidParameterError(
            f"{str(path)!r} is not a valid list_attr_celeba.txt: expected {count} rows of a file name and "
            f"{len(names)} values."
        )
    values = (np.asarray([r[1:] for r in rows], dtype=np.int8) > 0).astype(np.int8)
    return [r[0] for r in rows], names, values


def load_celeba(
    path: str | Path = Path("./data/celeba"),
    random_seed: int = 0,
    test_size: float = 0.5,
    target_attribute: str = "Smiling",
    *,
    image_size: int = 64,
    max_images: int | None = None,
) -> AmuletDataset:
    """Load CelebA with a binary target attribute and ``Male`` as the sensitive attribute.

    Args:
        path: Folder holding ``list_attr_celeba.txt`` and ``img_align_celeba/``.
        random_seed: Seed of the split (stratified on target x Male).
        test_size: Fraction of images in the test split, in (0, 1).
        target_attribute: Any of the 40 CelebA attributes (e.g. ``"Smiling"``, ``"Wavy_Hair"``,
            ``"Attractive"``, ``"Young"``).
        image_size: Side of the square images after centre crop and resize.
        max_images: Read only the first ``max_images`` rows of the attribute file (the full set at 3x64x64
            float32 needs about 10 GB).

    Returns:
        An :class:`AmuletDataset` with images (n, 3, image_size, image_size) in [0, 1], ``z`` = [Male].

    Raises:
        DatasetUnavailableError: When the folder is missing (CelebA must be downloaded by hand).
    """
    check_param("load_celeba", "random_seed", random_seed, [Interval(int, 0, None)])
    check_param("load_celeba", "test_size", test_size, [Interval(float, 0, 1, closed="neither")])
    check_param("load_celeba", "image_size", image_size, [Interval(int, 8, None)])
    check_param("load_celeba", "max_images", max_images, [Interval(int, 4, None), None])
    source = resolve_source(DATASET_SOURCES["celeba"], path)
    files, names, values = read_celeba_attributes(source.location / "list_attr_celeba.txt")
    check_param("load_celeba", "target_attribute", target_attribute, [Options(set(names) - {"Male"})])
    if max_images is not None:
        files, values = files[:max_images], values[:max_images]
    image_dir = source.location / "img_align_celeba"
    images = np.stack([_square_resize(image_dir / f, image_size) for f in files]).astype(np.float32) / 255.0
    y = values[:, names.index(target_attribute)].astype(np.int64)
    z = values[:, [names.index("Male")]].astype(np.int64)
    return _face_dataset(
        "celeba", source.description, images, y, z, ["Male"], 2, "image", image_size * image_size,
        test_size, random_seed,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# LFW
# --------------------------------------------------------------------------------------------------

_LFW_AGE = ["Baby", "Child", "Youth", "Middle Aged", "Senior"]
_LFW_RACE = ["White", "Black"]
_LFW_THRESHOLD = -0.1


def read_lfw_attributes(path: Path | str) -> pd.DataFrame:
    """Read the PubFig ``lfw_attributes.txt`` (comment lines skipped, ``#`` before the header removed)."""
    import io

    import pandas as pd

    lines = Path(path).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "person" in line and "imagenum" in line)
    header = re.sub(r"^#\s*", "", lines[start])
    return pd.read_csv(io.StringIO("\n".join([header, *lines[start + 1 :]])), sep="\t")


def _lfw_label(attributes: pd.DataFrame, name: str, *, target: bool) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's coding of one attribute for each row, and a mask of the rows where it is defined.

    ``gender``: 1 = male (the sign of the ``Male`` score). ``race``: the best of the White and Black scores,
    0 = White, 1 = Black. ``age``: the best of the five age scores (0 Baby, 1 Child, 2 Youth, 3 Middle Aged,
    4 Senior); as the target it is made binary (0-2 -> 0, 3-4 -> 1), as upstream. Race and age count only
    where their best score is >= -0.1.
    """
    if name == "gender":
        return (attributes["Male"].to_numpy() > 0).astype(np.int64), np.ones(len(attributes), dtype=bool)
    scores = attributes[_LFW_AGE if name == "age" else _LFW_RACE].to_numpy(dtype=np.float64)
    defined = scores.max(axis=1) >= _LFW_THRESHOLD
    best = scores.argmax(axis=1).astype(np.int64)
    if name == "age" and target:
        return (best >= 3).astype(np.int64), defined
    return best, defined


def _lfw_images(directory: Path, attributes: pd.DataFrame) -> np.ndarray:
    npz = directory / "lfw_images.npz"
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as archive:
            images = archive["arr_0"]
        if images.shape[1:] != (62, 47, 3) or len(images) != len(attributes):
            raise InvalidParameterError(
                f"{str(npz)!r} must hold arr_0 of shape ({len(attributes)}, 62, 47, 3); got {images.shape}."
            )
        return images
    from PIL import Image

    root = directory / "lfw_home" / "lfw_funneled"
    out = np.zeros((len(attributes), 62, 47, 3), dtype=np.uint8)
    for i, (person, number) in enumerate(zip(attributes["person"], attributes["imagenum"])):
        name = str(person).replace(" ", "_")
        with Image.open(root / name / f"{name}_{int(number):04d}.jpg") as image:
            crop = np.asarray(image.convert("RGB"))[70:195, 78:172]
        out[i] = np.asarray(Image.fromarray(crop).resize((47, 62), Image.Resampling.BILINEAR))
    return out


def load_lfw(
    path: str | Path = Path("./data/lfw"),
    target: str = "age",
    attribute_1: str = "race",
    attribute_2: str = "gender",
    test_size: float = 0.3,
    random_seed: int = 7,
) -> AmuletDataset:
    """Load LFW faces with PubFig attributes as a binary task with two binary sensitive attributes.

    Codings, as upstream: ``gender`` 1 = male, 0 = female; ``race`` 0 = White, 1 = Black; ``age`` as the
    target 1 = Middle Aged or Senior, 0 = Baby, Child or Youth, and as a sensitive attribute the PubFig class
    0-4 (Baby, Child, Youth, Middle Aged, Senior). For age and race a row counts only when its best score is
    >= -0.1 (rows where any of the three chosen attributes is undefined are dropped). Features are the
    flattened CHW images (3 x 62 x 47 = 8,742), float32 in [0, 1]. The split is upstream's plain seeded
    split (not stratified), so the same seed gives the same rows in the same order as upstream.

    Args:
        path: Folder holding ``lfw_attributes.txt`` and the images (see the module docstring).
        target: Label: ``"age"``, ``"gender"`` or ``"race"``.
        attribute_1: First sensitive attribute (same choices).
        attribute_2: Second sensitive attribute (same choices).
        test_size: Fraction of rows in the test split, in (0, 1).
        random_seed: Seed of the split.

    Returns:
        An :class:`AmuletDataset` (modality ``"tabular"``: flat vectors), ``sensitive_columns`` =
        ``[attribute_1, attribute_2]`` (by default ``["race", "gender"]``).
    """
    choices: list[Any] = [Options({"age", "gender", "race"})]
    for name, value in (("target", target), ("attribute_1", attribute_1), ("attribute_2", attribute_2)):
        check_param("load_lfw", name, value, choices)
    check_param("load_lfw", "test_size", test_size, [Interval(float, 0, 1, closed="neither")])
    check_param("load_lfw", "random_seed", random_seed, [Interval(int, 0, None)])
    source = resolve_source(DATASET_SOURCES["lfw"], path)
    attributes = read_lfw_attributes(source.location / "lfw_attributes.txt")
    images = _lfw_images(source.location, attributes)
    labels = [_lfw_label(attributes, n, target=i == 0) for i, n in enumerate((target, attribute_1, attribute_2))]
    keep = labels[0][1] & labels[1][1] & labels[2][1]
    x = (images[keep].transpose(0, 3, 1, 2).reshape(int(keep.sum()), -1).astype(np.float32)) / np.float32(255.0)
    y = labels[0][0][keep]
    z = np.stack([labels[1][0][keep], labels[2][0][keep]], axis=1)
    return _face_dataset(
        "lfw", source.description, x, y, z, [attribute_1, attribute_2], 2, "tabular", x.shape[1],
        test_size, random_seed, stratify=False,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# UTKFace
# --------------------------------------------------------------------------------------------------

_UTK_NAME = re.compile(r"^(\d+)_([01])_([0-4])_\d+.*\.jpg", re.IGNORECASE)


def _utk_values(
    kind: str, ages: np.ndarray, genders: np.ndarray, races: np.ndarray, bins: Sequence[int] | None
) -> np.ndarray:
    """The raw file-name code of ``kind`` (age in years, gender 0 = male, race 0-4), or the age bin."""
    if kind == "age":
        return ages.astype(np.int64) if bins is None else np.digitize(ages, bins).astype(np.int64)
    return (genders if kind == "gender" else races).astype(np.int64)


def load_utkface(
    path: str | Path = Path("./data/utkface"),
    target: str = "age",
    attribute_1: str = "gender",
    attribute_2: str = "race",
    age_bins: Sequence[int] | None = None,
    test_size: float = 0.3,
    random_seed: int = 7,
    *,
    image_size: int = 64,
) -> AmuletDataset:
    """Load UTKFace (aligned and cropped faces) with labels parsed from the file names.

    Labels and sensitive attributes keep the raw codes of the file names, as upstream: ``age`` in years
    (the class is the age itself, ``num_classes`` = the oldest age + 1), ``gender`` 0 = male, 1 = female,
    ``race`` 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others. ``age_bins`` turns the ``age`` target into
    classes (class = number of edges <= age); sensitive attributes always keep the raw codes.

    Args:
        path: Folder holding ``UTKFace/`` (or the images directly).
        target: Label: ``"age"``, ``"gender"`` or ``"race"``.
        attribute_1: First sensitive attribute (same choices).
        attribute_2: Second sensitive attribute (same choices).
        age_bins: Increasing age edges for the ``age`` target (``None``: the raw age is the class).
        test_size: Fraction of images in the test split, in (0, 1).
        random_seed: Seed of the split (stratified on the target and the attributes where every group is
            large enough, else on the target, else plain).
        image_size: Side of the square images after resizing (3 x image_size x image_size in [0, 1]).

    Returns:
        An :class:`AmuletDataset` with images (n, 3, image_size, image_size), ``z`` = [attribute_1, attribute_2].
    """
    choices: list[Any] = [Options({"age", "gender", "race"})]
    for name, value in (("target", target), ("attribute_1", attribute_1), ("attribute_2", attribute_2)):
        check_param("load_utkface", name, value, choices)
    check_param("load_utkface", "test_size", test_size, [Interval(float, 0, 1, closed="neither")])
    check_param("load_utkface", "random_seed", random_seed, [Interval(int, 0, None)])
    check_param("load_utkface", "image_size", image_size, [Interval(int, 8, None)])
    bins = None if age_bins is None else [int(b) for b in age_bins]
    if bins is not None and (not bins or any(b2 <= b1 for b1, b2 in itertools.pairwise(bins))):
        raise InvalidParameterError(
            "The 'age_bins' parameter of load_utkface must be a non-empty increasing list of ages. "
            f"Got {age_bins!r} instead."
        )
    source = resolve_source(DATASET_SOURCES["utkface"], path)
    files, parsed, skipped = [], [], []
    for file in sorted(source.location.iterdir()):
        match = _UTK_NAME.match(file.name)
        if match is None:
            if file.is_file():
                skipped.append(file.name)
            continue
        files.append(file)
        parsed.append([int(match.group(1)), int(match.group(2)), int(match.group(3))])
    if skipped:
        logger.warning("utkface: skipped %d files with malformed names, e.g. %s", len(skipped), skipped[:3])
    table = np.asarray(parsed, dtype=np.int64).reshape(-1, 3)
    ages, genders, races = table[:, 0], table[:, 1], table[:, 2]
    y = _utk_values(target, ages, genders, races, bins)
    z = np.stack([_utk_values(a, ages, genders, races, None) for a in (attribute_1, attribute_2)], axis=1)
    images = np.stack([_square_resize(f, image_size) for f in files]).astype(np.float32) / np.float32(255.0)
    if target == "age":
        num_classes = int(ages.max()) + 1 if bins is None else len(bins) + 1
    else:
        num_classes = 2 if target == "gender" else 5
    sensitive = [attribute_1, attribute_2]
    return _face_dataset(
        "utkface", source.description, images, y, z, sensitive, num_classes, "image", image_size * image_size,
        test_size, random_seed,
    )  # fmt: skip
