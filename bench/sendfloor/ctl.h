/* shared control block between sender (C or Python) and drain (receiver). int32 fields. */
#pragma once
enum { RX_BLOCK = 0, RX_BUSY = 1, RX_DEFER = 2 };
struct ctl {
    volatile int mode;      /* receiver mode for the current round */
    volatile int in_round;  /* 1 while the sender is inside the timed send loop */
    volatile int stop;      /* sender finished: receiver should exit */
    volatile int ready;     /* receiver: all N connects done */
    volatile int accepted;  /* sender: number of accepted connections */
};
