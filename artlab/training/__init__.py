"""Training: the one loop (loop.fit), the recipes that use it, fine-tuning, soups and evaluation."""
