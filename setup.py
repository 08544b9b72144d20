"""content-signals: embeddings and labels for a content corpus, computed by Spark, stored in Delta."""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGES = ["conf", "signals", "udfs", "lake", "rollout", "retrieval", "monitoring", "training", "serving", "jobs", "sample_corpus"]  # every layer but benchmarks

setup(
    name="content-signals",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=[p for name in PACKAGES for p in (name, f"{name}.*")]),
    package_data={"conf": ["*.yaml"]},  # the profiles travel with the code: a wheel finds them
    install_requires=[
        line.strip()
        for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    ],
    entry_points={"console_scripts": ["content-signals = jobs.cli:entry"]},
)
