"""Small pieces every part of siammae shares: console output and image constants."""
