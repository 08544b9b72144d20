"""The label model behind an interface of ours: labeling functions' votes in, a probability of the
positive value out. snorkel's LabelModel today; a caller never imports snorkel."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from training.labeling_functions import ABSTAIN, NEGATIVE, POSITIVE

SNORKEL = "snorkel-0.10.0-LabelModel"
MAJORITY = "majority-vote"
MIN_VOTING = 3  # labeling functions that vote at all, for snorkel's LabelModel to tell their accuracies apart


class LabelModel(Protocol):
    """Fits on an items x labeling functions votes matrix (-1 abstain, 0, 1) and gives P(positive)."""

    name: str

    def fit(self, votes: np.ndarray, positive_share: float | None = None) -> None: ...

    def p_positive(self, votes: np.ndarray) -> np.ndarray: ...


class SnorkelLabelModel:
    """snorkel's LabelModel (matrix completion over the votes' agreements), seeded; it needs at least
    three labeling functions (columns), voting or not."""

    name = SNORKEL

    def __init__(self, seed: int = 7, epochs: int = 500) -> None:
        self.seed, self.epochs = seed, epochs
        self._model = None

    def fit(self, votes: np.ndarray, positive_share: float | None = None) -> None:
        """Fit on the votes; `positive_share`, where known (from gold), fixes the class balance
        instead of leaving it to be estimated from the votes alone."""
        from snorkel.labeling.model import LabelModel as Snorkel  # heavy (torch, tensorboard): only when fitted

        self._model = Snorkel(cardinality=2, verbose=False)
        balance = None if positive_share is None else [1 - positive_share, positive_share]
        self._model.fit(L_train=votes, n_epochs=self.epochs, seed=self.seed, progress_bar=False, class_balance=balance)

    def p_positive(self, votes: np.ndarray) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("fit the label model first")
        return self._model.predict_proba(votes)[:, 1].astype(float)


def vote_share(votes: np.ndarray) -> np.ndarray:
    """Each item's share of yes among the votes cast on it (NaN where none was cast)."""
    cast = (votes != ABSTAIN).sum(axis=1)
    return np.where(cast > 0, (votes == POSITIVE).sum(axis=1) / np.maximum(cast, 1), np.nan)


class MajorityVoteLabelModel:
    """The share of yes votes, and the class balance where none was cast: the label model when fewer
    than MIN_VOTING labeling functions vote, where snorkel's cannot tell their accuracies apart (two,
    with the balance fixed: a lone yes vote fell below the balance, 0.09 against 0.15), or when no
    function ever votes one of the values, where it cannot tell which class the votes mean (yes votes
    only, the balance fixed at 0.2: an item every function called yes got 0.001)."""

    name = MAJORITY

    def __init__(self) -> None:
        self._balance = 0.5

    def fit(self, votes: np.ndarray, positive_share: float | None = None) -> None:
        self._balance = 0.5 if positive_share is None else positive_share

    def p_positive(self, votes: np.ndarray) -> np.ndarray:
        share = vote_share(votes)
        return np.where(np.isnan(share), self._balance, share)


def label_model_for(votes: np.ndarray) -> LabelModel:
    """snorkel's LabelModel when at least MIN_VOTING labeling functions vote on some item and both
    values are voted somewhere, else majority vote."""
    voting = int((votes != ABSTAIN).any(axis=0).sum())
    both = bool((votes == POSITIVE).any() and (votes == NEGATIVE).any())
    return SnorkelLabelModel() if voting >= MIN_VOTING and both else MajorityVoteLabelModel()
