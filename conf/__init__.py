"""The YAML profiles (shipped as package data) and the settings model that reads them. Imports nothing of ours."""
