"""The `warden` command (click): serve, migrate, users, keys, policy, export, models. Imports anything;
nothing imports it.
"""
