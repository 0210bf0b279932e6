"""SuPreM-recipe plan presets, one JSON per backbone (data; read by the planner and the zoo)."""
