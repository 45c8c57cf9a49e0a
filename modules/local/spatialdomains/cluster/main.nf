process SPATIALDOMAINS_CLUSTER {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(h5ad), val(method)    // trained AnnData, whose embedding obsm['X_<method>'] to cluster

    output:
    tuple val(meta), path("*.h5ad")       , emit: h5ad
    tuple val(meta), path("*.domains.csv"), emit: domains
    path "versions.yml"                   , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args      = task.ext.args ?: ''
    def prefix    = task.ext.prefix ?: "${meta.id}"
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains cluster \\
        -i ${h5ad} \\
        --method ${method} \\
        --threads ${task.cpus} \\
        --domains-csv ${prefix}.domains.csv \\
        -o ${prefix}.h5ad \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
        r-mclust: \$(Rscript -e 'cat(as.character(packageVersion("mclust")))' 2>/dev/null || echo 'not installed')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.h5ad ${prefix}.domains.csv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
        r-mclust: stub
    END_VERSIONS
    """
}
