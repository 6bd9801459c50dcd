"""The Parameter Golf task itself: the competition script, its data, log parser and rules checker. Imports nothing from helm."""
