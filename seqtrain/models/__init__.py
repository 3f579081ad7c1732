"""Recurrent building blocks and the model shapes built from them."""
