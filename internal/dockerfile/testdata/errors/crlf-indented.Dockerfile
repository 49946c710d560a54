


FROM busybox
  BOGUS   arg  
