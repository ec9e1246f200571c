"""Every knob of the explorer in one frozen value, and its translation into the
keywords each loss accepts. Widgets fill a ``Settings``; the library never sees widgets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from explorer import losses

# the losses a person can pick, with their display names
LOSS_LABELS = {
    "dice_loss": "Dice loss",
    "jaccard_loss": "Jaccard (IoU) loss",
    "tversky_loss": "Tversky loss",
    "generalized_dice_loss": "Generalized Dice loss",
    "binary_crossentropy": "BCE",
    "bce_dice_loss": "BCE + Dice",
    "bce_log_dice_loss": "BCE − log Dice",
    "focal_loss": "Focal loss",
    "lovasz": "Lovász",
    "boundary_loss": "Boundary loss",
    "boundary_dice_loss": "Dice + boundary",
    "cl_dice_loss": "clDice loss",
    "cl_dice_dice_loss": "Dice + clDice",
}
# generalized Dice weighs classes by 1/G², so the shared smooth (about 1) would swamp it
GENERALIZED_DICE_SMOOTH = 1e-5


@dataclass(frozen=True)
class Settings:
    loss: str = "dice_loss"
    num_classes: int = 2  # 2 = binary: one foreground channel; 3..6 = softmax channels
    smooth: float = 1.0
    epsilon: float = 0.0
    squared: bool = False
    per_image: bool = True
    soft_label: bool = False
    class_weights: tuple[float, ...] | None = None
    normalize_weights: bool = True
    include_background: bool = True
    alpha: float = 0.5
    beta: float = 0.5
    tversky_gamma: float = 1.0
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    boundary_weight: float = 0.01  # the boundary term beside Dice (Kervadec et al. start at 0.01)
    cl_dice_weight: float = 1.0  # the clDice term beside Dice
    cl_iterations: int = 3  # soft-skeleton steps: about the largest radius of a thin structure
    lovasz_classes: str = "present"
    threshold: float = 0.5
    empty: str = "smooth"  # how a region loss scores a class empty in truth and prediction
    from_logits: bool = False  # the losses read the logits behind p (log-sigmoid, no clip)

    def __post_init__(self):
        if self.loss not in LOSS_LABELS:
            raise ValueError(f"loss must be one of {list(LOSS_LABELS)}, got {self.loss!r}")
        if not 2 <= self.num_classes <= 6:
            raise ValueError(f"num_classes must be 2 (binary) to 6, got {self.num_classes}")

    @property
    def channels(self) -> int:
        return 1 if self.num_classes == 2 else self.num_classes

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def loss_name(self, loss: str | None = None) -> str:
        """The library function behind a pick: Lovász is the hinge for one channel and
        Lovász-Softmax for several."""
        loss = loss or self.loss
        if loss == "lovasz":
            return "lovasz_hinge" if self.channels == 1 else "lovasz_softmax"
        return loss

    def keywords(self, loss: str | None = None) -> dict:
        """The keywords of ``explorer.losses.<loss>`` under these settings."""
        name = self.loss_name(loss)
        mine = {
            "smooth": GENERALIZED_DICE_SMOOTH if name == "generalized_dice_loss" else self.smooth,
            "epsilon": self.epsilon, "squared": self.squared, "per_image": self.per_image,
            "soft_label": self.soft_label,
            "class_weights": list(self.class_weights) if self.class_weights else None,
            "normalize_weights": self.normalize_weights,
            "include_background": self.include_background,
            "alpha": self.focal_alpha if name == "focal_loss" else self.alpha,
            "beta": self.beta,
            "gamma": self.focal_gamma if name == "focal_loss" else self.tversky_gamma,
            "bce_weight": self.bce_weight, "dice_weight": self.dice_weight,
            "boundary_weight": self.boundary_weight, "cl_dice_weight": self.cl_dice_weight,
            "iterations": self.cl_iterations,
            "classes": self.lovasz_classes, "empty": self.empty,
        }
        if self.from_logits:  # only when asked: the Lovász hinge reads logits by default
            mine["from_logits"] = True
        if name in ("binary_crossentropy", "focal_loss"):
            # these class weights are the Dice family's (w_c L_c); cross-entropy's are torch's
            # w[y_i], a different knob the explorer does not set
            del mine["class_weights"]
        accepted = losses.loss_keywords(losses.LOSSES[name])
        return {k: v for k, v in mine.items() if k in accepted}

    def dice_keywords(self) -> dict:
        return self.keywords("dice_loss")
