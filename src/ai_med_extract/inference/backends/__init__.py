"""Model backends behind one interface; heavy libraries are imported only inside the chosen one."""
