"""Every run watched: statistics of what it wrote, drift against reference days, alerts from configured rules."""
