"""safety_gate"""
