"""Keypoint matching with OpenCV: SIFT + FLANN + Lowe's ratio test, and ORB + brute-force
Hamming matching with the ratio test. Inputs are ``(H, W)`` uint8 grey images; outputs are
``(N, 2)`` float32 point pairs (pre, post) in those images' pixels."""

from __future__ import annotations

import cv2
import numpy as np

#: Lowe's ratio: a match is kept when its distance is below this share of the second best
RATIO = 0.75
SIFT_FEATURES = 4000
ORB_FEATURES = 5000


def _pairs(kp1, kp2, knn, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if not good:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    src = np.float32([kp1[m.queryIdx].pt for m in good])
    dst = np.float32([kp2[m.trainIdx].pt for m in good])
    return src, dst


def sift_matches(pre: np.ndarray, post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sift = cv2.SIFT_create(nfeatures=SIFT_FEATURES)
    kp1, d1 = sift.detectAndCompute(pre, None)
    kp2, d2 = sift.detectAndCompute(post, None)
    if d1 is None or d2 is None or len(kp1) < 2 or len(kp2) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    flann = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 5}, {"checks": 64})  # KD-tree
    return _pairs(kp1, kp2, flann.knnMatch(d1, d2, k=2), RATIO)


def orb_matches(pre: np.ndarray, post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    orb = cv2.ORB_create(nfeatures=ORB_FEATURES)
    kp1, d1 = orb.detectAndCompute(pre, None)
    kp2, d2 = orb.detectAndCompute(post, None)
    if d1 is None or d2 is None or len(kp1) < 2 or len(kp2) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    bf = cv2.BFMatcher(cv2.NORM_HAMMING)
    return _pairs(kp1, kp2, bf.knnMatch(d1, d2, k=2), 0.8)
