"""The demo's sample corpus, generated from real photos with a truth table for evaluation. Imports signals.contracts only."""
