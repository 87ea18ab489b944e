"""retrocohort.survival"""
